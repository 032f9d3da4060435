// app/screenshot.hpp — reads the current OpenGL framebuffer and saves it as a PNG (for
// `--screenshot`, the docs and the headless test).
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

namespace dptq::studio {

// Reads width×height RGB pixels of the back buffer, top row first. Call after rendering and
// before swapping buffers.
std::vector<uint8_t> read_framebuffer_rgb(int width, int height);

// The w×h sub-image at (x, y) (top-left origin) of a width×height RGB image, clamped to the image
// (an empty vector when nothing is left). `out_w` / `out_h` receive the clamped size.
std::vector<uint8_t> crop_rgb(const std::vector<uint8_t>& rgb, int width, int height, int x, int y, int w,
                              int h, int& out_w, int& out_h);

// Writes an 8-bit RGB PNG atomically (temp file beside `path`, fsync, rename).
// Throws dptq::Error(Io) naming the file when it cannot be written.
void write_png_rgb(const std::filesystem::path& path, int width, int height,
                   const std::vector<uint8_t>& rgb);

}  // namespace dptq::studio
