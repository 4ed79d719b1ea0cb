"""How the service reaches verdicts: in process, or through the queue and the store."""
