"""space.yaml as pydantic models (`schema`) and the search scales (`scales`)."""
