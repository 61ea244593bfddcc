"""Plan -> Records: the Engine protocol, its backends, model resolution, the result cache
and the evaluation loop."""
