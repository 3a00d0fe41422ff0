"""The guest's sound card, which SPICE carries to the viewer (graphics.sound)."""

from typing import Literal

SoundModel = Literal["ich9", "ich6", "ich7", "ac97", "es1370", "sb16", "usb"]
DEFAULT_SOUND_MODEL: SoundModel = "ich9"


def sound_model(sound: bool | SoundModel) -> SoundModel | None:
    """`sound: true` is the default card; a model name is that card; false is none."""
    if isinstance(sound, bool):
        return DEFAULT_SOUND_MODEL if sound else None
    return sound
