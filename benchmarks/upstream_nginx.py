"""A fast upstream for the execution figures: nginx answering one static JSON file on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.fixtures import PRODUCT
from benchmarks.processes import LOAD_CORE, free_port, running, wait_port

# One worker, no master, no user switch: a single process on the load core, run by us.
CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        default_type application/json;
        # Every path answers the same product; POSTs too (nginx refuses them on static files).
        location / {{ try_files /product.json =404; error_page 405 =200 /product.json; }}
    }}
}}
"""


@contextmanager
def nginx_upstream(work: Path) -> Iterator[str]:
    """Serves PRODUCT at every path; yields the base URL."""
    prefix = (work / "nginx").resolve()
    (prefix / "www").mkdir(parents=True, exist_ok=True)
    (prefix / "www" / "product.json").write_text(json.dumps(PRODUCT))
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(prefix=prefix, port=port))
    log = work / "logs" / "nginx.log"
    with running(["nginx", "-p", str(prefix), "-c", str(config)], LOAD_CORE, log) as child:
        wait_port(child, port, log)
        yield f"http://127.0.0.1:{port}"
