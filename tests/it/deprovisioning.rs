//! Issue scenarios for deprovisioning: one test per numbered scenario.
