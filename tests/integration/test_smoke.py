from domain.service import Cause
from infrastructure.container import Container


def test_a_created_profile_reaches_the_read_table_as_the_default(container: Container) -> None:
    outcome = container.app.create_profile("acct", "Alex", [{"name": "Kart"}], Cause("acct"))
    container.view.wait(container.app.name, outcome.position, timeout=10)
    row = container.queries.get("acct", outcome.profile_id)
    assert row is not None
    assert (row.name, row.is_default, row.vehicle_count, row.position) == ("Alex", True, 1, outcome.position)
