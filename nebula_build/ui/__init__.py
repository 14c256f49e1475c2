"""Everything that is printed: plans, statuses and results as text or JSON, live
progress, terminal styling. Renders what the engine decided; decides nothing."""
