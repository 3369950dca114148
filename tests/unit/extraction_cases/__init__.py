"""Extraction cases per language, read by tests/unit/test_extraction_languages.py: ``ADDS`` are
read against an empty order, ``CHANGES`` against ``ORDER`` (its last item is the one "make it
3" means). Each expected change is (action, name as the order or the customer spells it,
quantity, unit as written)."""
