"""The analysis engine and the metric sources it reads."""
