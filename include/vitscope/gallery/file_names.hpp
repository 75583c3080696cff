#pragma once
// The offline gallery of a run: DIR/index.html lists every input with its status, thumbnail and
// error; DIR/<input>/index.html shows one image's views and an attention explorer. Pages load
// DIR/gallery.js and DIR/gallery.css, written by the run: no network, no server.

namespace vitscope::gallery {

// The file names the gallery gives each image's folder (and DIR itself, for the index).
inline constexpr char kThumbnailFile[] = "thumb.jpg";
inline constexpr char kPageFile[] = "index.html";

}  // namespace vitscope::gallery
