"""Reports: Table 1 with significance tests, detailed stats and plots."""
