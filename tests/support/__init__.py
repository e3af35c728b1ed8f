"""Helpers shared by the test tiers (imported as a library; fixtures stay in the conftests)."""
