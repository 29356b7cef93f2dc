//! The directory of care providers, areas, patrols, routing rules and patrol tokens.
