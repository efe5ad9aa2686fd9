"""Small shared utilities (launch checks, caches)."""
