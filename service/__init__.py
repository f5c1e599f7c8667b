"""The service: owns the data (SQLModel storage) and the execution of batches."""
