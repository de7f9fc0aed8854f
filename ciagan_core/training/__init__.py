"""Training data and training for the CIAGAN generator (REFERENCE §3-4)."""
