"""The web catalog: pre-rendered pages over every dialect's records, and their templates."""
