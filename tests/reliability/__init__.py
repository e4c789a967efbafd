"""Load and fault tests against a real uvicorn app process (`-m reliability`; scale with
RELIABILITY_SCALE). Their harness is tests/support/reliability.py."""
