//! Contract tests of the Portkey client against the simulator, over HTTP.
