"""A local PCS that speaks the real wire protocol (AWS JSON 1.0), with fault injection."""
