"""How a run is shown to people: `terminal` (the live view and summary) and `markdown` (the PR
comment, the job summary with its Mermaid picture, commit status descriptions)."""
