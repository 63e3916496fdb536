"""What one worker process holds while serving: the hot path (:mod:`.core`), the housekeeping
beside it (:mod:`.housekeeping`), feedback and live quality (:mod:`.feedback`), and the hand-overs
to the event loop's thread (:mod:`.loop_owner`)."""

from service.runtime.core import Runtime

__all__ = ["Runtime"]
