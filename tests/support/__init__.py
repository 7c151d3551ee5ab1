"""Test support code shared by the suites: local servers, fixture builders."""
