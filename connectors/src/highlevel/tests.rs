//! Tests of the client against the sandbox over real HTTP on 127.0.0.1.
