"""Machine-translation providers, one per file (see harness.mt.provider.Provider)."""
