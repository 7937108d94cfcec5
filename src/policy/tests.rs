//! Tests of the whole language through the public API: loading folders, every error code,
//! evaluation rules, explanations, tests beside policies, and the loader on arbitrary input.
