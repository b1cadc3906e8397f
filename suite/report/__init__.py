"""Reports: pandas tables, plots, HTML, and the regression compare."""
