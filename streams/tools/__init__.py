"""Tools that ship with the service but are not on its runtime path: the simulator."""
