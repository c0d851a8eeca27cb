"""Contributed handlets (favicon, checkers, ...): each module registers its sign on import."""
