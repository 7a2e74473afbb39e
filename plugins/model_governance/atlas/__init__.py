"""Everything this project knows about Apache Atlas: the `model` type and its attribute names (schema),
the entities built from a deployment (entities), the searches and the status changes (queries), and the
registration step's logic (register). The REST calls themselves are `hooks.atlas.AtlasHook`'s."""
