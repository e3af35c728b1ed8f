"""Read side: how events become rows of the racer_profiles table."""
