"""HTML page -> sections -> record. Knows nothing about HTTP."""
