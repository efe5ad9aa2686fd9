"""Small shared utilities of the examples: launch checks (distributed.py), recipe files with
overriding flags (recipes.py) and the closing all_results.json (results.py)."""
