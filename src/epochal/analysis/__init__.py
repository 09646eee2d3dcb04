"""Reading training curves: the diagnosis of a run and its plots. Reads plain curves, never the engine."""
