"""Deploy targets. `local` (targets.local) runs releases as `bentoml serve`
processes on this machine."""
