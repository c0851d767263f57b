// Playback on the session page. Loaded from this origin only (the CSP forbids inline script);
// the recording's URL and the start time come from data attributes the server escaped.
(function () {
  "use strict";
  var element = document.getElementById("player");
  var speedSelect = document.getElementById("speed");
  if (!element || !window.AsciinemaPlayer) { return; }
  var src = element.getAttribute("data-src");
  var startText = element.getAttribute("data-start-at");
  var player = null;

  function create(startAt, speed, autoPlay) {
    var options = { preload: true, speed: speed, autoPlay: autoPlay, idleTimeLimit: 2,
                    fit: "width", terminalFontFamily: "DejaVu Sans Mono, monospace" };
    if (startAt !== null) {
      // startAt positions playback; the poster draws the screen as it was at that moment
      // before anyone presses play (a search hit lands on its text).
      options.startAt = startAt;
      if (!autoPlay) { options.poster = "npt:" + startAt; }
    }
    player = window.AsciinemaPlayer.create(src, element, options);
    window.certgatePlayer = player;
  }

  create(startText ? parseFloat(startText) : null, 1, false);

  if (speedSelect) {
    speedSelect.addEventListener("change", function () {
      var speed = parseFloat(speedSelect.value);
      Promise.resolve(player.getCurrentTime()).then(function (now) {
        player.dispose();
        element.textContent = "";
        create(now || 0, speed, true);
      });
    });
  }
}());
