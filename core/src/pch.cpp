// Compiles the shared precompiled header (core/src/pch.h); nothing else.
