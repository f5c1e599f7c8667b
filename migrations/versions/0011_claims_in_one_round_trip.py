"""PostgreSQL: a claim and a send mark are each one function call, one round trip.

Claims and send marks take turns at a batch (service/claims.py): the batch's
advisory lock, then a count of what it runs, then the claim or the mark. Sent
from the replica, that was six round trips (BEGIN, the turn, the count, the
claim, COMMIT, and the pool's ping), and the lock was held across the middle
ones, while the replica's event loop was busy with the operations it runs: in
figure 6 a claim took 3 to 10 ms, during which nothing of the batch could be
claimed or marked by anyone. These functions run the same steps inside the
server, called in autocommit mode: the statement is its own transaction, and
the lock is held only while the function runs.

Under READ COMMITTED every statement of a VOLATILE PL/pgSQL function takes a
fresh snapshot, so the count after the lock sees every mark committed by the
turn before, as the separate statements did. The lock's key is the one
replicas of the previous version take, so both can run during a rolling
deploy. procrastinate keeps its queue's fetch and finish in PL/pgSQL
functions for the same reason. SQLite runs the Python steps: its statements
cost no round trips.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A batch's turn, in a loop over `the_batch`: both functions declare its variables.
TURN_VARIABLES = (
    "the_batch text; batch_limit int; batch_status text; held int; running int; own_running int;"
)
# Both take their batches in the order given (the caller sorts them, as every
# replica does, so no two calls deadlock).
TURN = """
    PERFORM pg_advisory_xact_lock(hashtextextended('batch_claims:' || the_batch, 0));
    SELECT b.in_flight_limit, b.status INTO batch_limit, batch_status
    FROM batches b
    WHERE b.id = the_batch AND b.status IN ('pending', 'in_progress') AND b.canceled_at IS NULL;
    CONTINUE WHEN NOT FOUND;  -- canceled or over: it claims and sends nothing more
    SELECT
        count(*),
        count(*) FILTER (WHERE o.sent_at IS NOT NULL AND o.id <> ALL(finished)),
        count(*) FILTER (
            WHERE o.sent_at IS NOT NULL AND o.lease_owner = claim_owner AND o.id <> ALL(finished))
    INTO held, running, own_running
    FROM batch_operations o
    WHERE o.batch_id = the_batch AND o.status = 'in_progress';
"""

CLAIM = f"""
CREATE FUNCTION batchd_claim(
    batch_ids text[], wanted int[], to_start int[], prefetch int, finished text[],
    claim_owner text, claimed_at double precision, lease_until double precision
) RETURNS TABLE (
    id varchar, batch_id varchar, tenant varchar, lease_generation int,
    http_method varchar, path varchar, query_params jsonb, body jsonb, attempts int,
    idempotency_key varchar, sent_at double precision
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    {TURN_VARIABLES}
    claimed int;
    marked int;
BEGIN
    FOR i IN 1 .. coalesce(array_length(batch_ids, 1), 0) LOOP
        the_batch := batch_ids[i];
        {TURN}
        -- Sequential: the next operation only once every earlier one is stored.
        claimed := least(
            wanted[i], CASE WHEN batch_limit = 1 THEN 1 ELSE prefetch * batch_limit END - held
        );
        CONTINUE WHEN claimed <= 0;
        marked := greatest(0, least(to_start[i], claimed, batch_limit - running));
        -- Claims not marked wait for room: no more than the batch has left now, and
        -- than the caller's own running operations will free. Room that other
        -- replicas hold would keep them waiting, and their turns at the gate in vain.
        claimed := least(claimed, own_running + greatest(0, batch_limit - running));
        CONTINUE WHEN claimed <= 0;
        IF batch_status = 'pending' THEN
            -- Before its operations are locked: a cancel holds the batch's row
            -- while it waits for theirs.
            UPDATE batches SET status = 'in_progress', updated_at = claimed_at
            WHERE batches.id = the_batch AND batches.status = 'pending';
        END IF;
        RETURN QUERY
        WITH next_pending AS MATERIALIZED (
            SELECT p.id, p.position FROM batch_operations p
            WHERE p.batch_id = the_batch AND p.status = 'pending'
              AND (batch_limit > 1 OR p.position = (
                  SELECT min(f.position) FROM batch_operations f
                  WHERE f.batch_id = the_batch AND f.status = 'pending'))
            ORDER BY p.position
            LIMIT claimed
            FOR UPDATE SKIP LOCKED
        ), ranked AS (
            SELECT n.id, row_number() OVER (ORDER BY n.position) AS rank FROM next_pending n
        )
        UPDATE batch_operations o SET
            status = 'in_progress',
            lease_owner = claim_owner,
            lease_expires_at = lease_until,
            lease_generation = o.lease_generation + 1,
            sent_at = CASE WHEN ranked.rank <= marked THEN claimed_at END,
            updated_at = claimed_at
        FROM ranked
        WHERE o.id = ranked.id AND o.status = 'pending'
        RETURNING o.id, o.batch_id, o.tenant, o.lease_generation, o.http_method, o.path,
            o.query_params, o.body, o.attempts, o.idempotency_key, o.sent_at;
    END LOOP;
END
$$
"""

MARK = f"""
CREATE FUNCTION batchd_mark_sent(
    batch_ids text[], claim_ids text[], generations int[], finished text[],
    claim_owner text, marked_at double precision
) RETURNS TABLE (id varchar, sent boolean) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    {TURN_VARIABLES}
    chosen text[];
    room int;
BEGIN
    FOR the_batch IN SELECT DISTINCT b COLLATE "C" FROM unnest(batch_ids) AS b ORDER BY 1 LOOP
        {TURN}
        -- Earliest first; beyond the room left they wait for another turn.
        SELECT array_agg(c.claim_id ORDER BY c.claim_id) INTO chosen
        FROM unnest(batch_ids, claim_ids) AS c(batch_id, claim_id)
        WHERE c.batch_id = the_batch;
        room := greatest(0, batch_limit - running);
        RETURN QUERY SELECT c::varchar, false FROM unnest(chosen[room + 1 :]) AS c;
        RETURN QUERY
        UPDATE batch_operations o SET sent_at = marked_at
        FROM unnest(claim_ids, generations) AS c(claim_id, generation)
        WHERE o.id = c.claim_id AND o.lease_generation = c.generation
          AND c.claim_id = ANY(chosen[1 : room])
          AND o.lease_owner = claim_owner AND o.status = 'in_progress'
        RETURNING o.id, true;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CLAIM)
        op.execute(MARK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION batchd_mark_sent")
        op.execute("DROP FUNCTION batchd_claim")
