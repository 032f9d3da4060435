// app/theme.hpp — the studio's signature colours, kept free of ImGui so tests/test_studio.cpp can
// look for them in a screenshot. apply_theme() (studio.cpp) turns them into the ImGui style.
#pragma once
#include <cstdint>

namespace dptq::studio::theme {

struct Rgb {
  uint8_t r, g, b;
  constexpr float rf() const { return r / 255.0f; }
  constexpr float gf() const { return g / 255.0f; }
  constexpr float bf() const { return b / 255.0f; }
};

inline constexpr Rgb kWindowBg{28, 30, 34};        // panel background
inline constexpr Rgb kTitleBg{22, 44, 70};         // title / dock tab bar of an unfocused panel
inline constexpr Rgb kTitleBgActive{34, 76, 124};  // title / dock tab bar of the focused panel
inline constexpr Rgb kError{235, 87, 75};          // dptq::Error messages
inline constexpr Rgb kOk{110, 200, 120};           // "loaded", finished results
inline constexpr Rgb kMuted{150, 150, 160};        // hints, cancelled tasks
// Depth plots: blocks with 8-bit activations in the current plan (a strip under each plot in
// exactly this colour, a translucent band above it) and phases with massive activations (bands).
inline constexpr Rgb kPlan8bit{245, 166, 35};
inline constexpr Rgb kPhase{120, 90, 200};
// Measured sensitivity (Proxies panel bars, the Depth panel's measured-gain curve).
inline constexpr Rgb kMeasured{40, 190, 205};

}  // namespace dptq::studio::theme
