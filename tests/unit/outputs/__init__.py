"""Alert channels and their rate limiting."""
