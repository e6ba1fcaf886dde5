"""The rollback webhook (contract §3): the signed body and its crash-safe delivery."""
