"""A tiny singer-sdk tap, so that fixtures come from the SDK itself.

One FULL_TABLE stream, `items` (key `id`), whose rows are the config's `rows`. With
`emit_activate_version_messages: true` the SDK emits ACTIVATE_VERSION and versioned records; with
`batch_config` it emits BATCH messages and their files instead of RECORDs.

    python sdk_tap.py --config config.json
"""

from singer_sdk import Stream, Tap
from singer_sdk import typing as th


class Items(Stream):
    name = "items"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
    ).to_dict()

    def get_records(self, context):
        yield from self.config["rows"]


class TapFixture(Tap):
    name = "tap-fixture"
    config_jsonschema = th.PropertiesList(
        th.Property("rows", th.ArrayType(th.ObjectType(additional_properties=True))),
    ).to_dict()

    def discover_streams(self):
        return [Items(self)]


if __name__ == "__main__":
    TapFixture.cli()
