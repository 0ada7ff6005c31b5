"""Full-reference quality metrics and their registry."""
