"""Stage 3: signatures over manifests (OMS bundles) and their verification."""
