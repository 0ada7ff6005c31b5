"""Machine-perception tasks (model + scoring) and their registry."""
