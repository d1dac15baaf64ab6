//! Property test: random SCIM writes, IdP mistakes and control-plane faults against the simulator.
