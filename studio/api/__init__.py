"""The verifier as a web service (issue 17)."""
