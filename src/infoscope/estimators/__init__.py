"""The estimators, one module per family; :mod:`._base` holds the shared contract.

Wave 2 (DESIGN section 7): :mod:`.similarity` (L x M similarity matrices),
:mod:`.neighbors` (mutual kNN alignment, CKNNA), :mod:`.permutation` (their
permutation null) and :mod:`.geometry` (RankMe, alpha-ReQ, stable rank).
"""
