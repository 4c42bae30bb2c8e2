"""The window's views: the map, the neighbours browser, the training and runs panels, and the
curve and health docks. Each view reads the shared ``Session`` and redraws on its signals."""
