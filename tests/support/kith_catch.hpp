// Includes Catch2's test macros, whichever major version (2 or 3) was found.
#pragma once
#ifdef KITH_CATCH3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
