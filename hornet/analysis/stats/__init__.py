"""Suite statistics and reports: tables, paired differences, power, figures, the paper's numbers as data."""
