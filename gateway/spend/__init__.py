"""Spend: what each request cost, budgets that hold across instances, and the spend ledger."""
