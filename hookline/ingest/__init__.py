"""The HTTP edge: receive webhook requests, verify them and hand them to Redis."""
