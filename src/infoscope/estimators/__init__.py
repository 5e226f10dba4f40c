"""The estimators, one module per family; :mod:`._base` holds the shared contract."""
