// Playback on the session and console log pages. Loaded from this origin only (the CSP
// forbids inline script); the recording's URL and the start time come from data attributes
// the server escaped.
(function () {
  "use strict";
  var IDLE_TIME_LIMIT = 2;
  var element = document.getElementById("player");
  var speedSelect = document.getElementById("speed");
  if (!element || !window.AsciinemaPlayer) { return; }
  var src = element.getAttribute("data-src");
  var startText = element.getAttribute("data-start-at");
  var player = null;
  var requestedSpeed = null;  // chosen before the recording arrived
  var recording = null;
  var timeline = [];

  // The player shortens pauses longer than IDLE_TIME_LIMIT. Its startAt option is in the
  // recording's own time, but a "npt:" poster and getCurrentTime() are in the shortened
  // time: these points ([recording ms, player ms] per event, computed the way the player's
  // time limiter does) translate between the two, so a search hit after an hour of quiet
  // console still lands on its text.
  function buildTimeline(text) {
    var points = [], previous = 0, shift = 0, limit = IDLE_TIME_LIMIT * 1000;
    text.split("\n").slice(1).forEach(function (line) {
      var event;
      if (!line.trim()) { return; }
      try { event = JSON.parse(line); } catch (error) { return; }
      if (!Array.isArray(event) || typeof event[0] !== "number") { return; }
      var time = event[0] * 1000, delay = time - previous;
      previous = time;
      if (delay > limit) { shift += delay - limit; }
      points.push([time, time - shift]);
    });
    return points;
  }

  function toPlayerTime(seconds) {
    var ms = seconds * 1000, shift = 0;
    for (var i = 0; i < timeline.length && timeline[i][0] < ms; i++) {
      shift = timeline[i][0] - timeline[i][1];
    }
    return (ms - shift) / 1000;
  }

  function toRecordingTime(seconds) {
    var ms = seconds * 1000, shift = 0;
    for (var i = 0; i < timeline.length && timeline[i][1] <= ms; i++) {
      shift = timeline[i][0] - timeline[i][1];
    }
    return (ms + shift) / 1000;
  }

  function create(startAt, speed, autoPlay) {
    var options = { preload: true, speed: speed, autoPlay: autoPlay,
                    idleTimeLimit: IDLE_TIME_LIMIT, fit: "width",
                    terminalFontFamily: "DejaVu Sans Mono, monospace" };
    if (startAt !== null) {
      // startAt positions playback; the poster draws the screen as it was at that moment
      // before anyone presses play (a search hit lands on its text).
      options.startAt = startAt;
      if (!autoPlay) { options.poster = "npt:" + toPlayerTime(startAt); }
    }
    player = window.AsciinemaPlayer.create({ data: recording }, element, options);
    window.certgatePlayer = player;
  }

  fetch(src, { credentials: "same-origin" }).then(function (response) {
    if (!response.ok) { throw new Error("the recording could not be loaded (" + response.status + ")"); }
    return response.text();
  }).then(function (text) {
    recording = text;
    timeline = buildTimeline(text);
    // A hit names the moment its text was shown: start just after it, so that output is on
    // the screen.
    var startAt = startText ? parseFloat(startText) + 0.001 : null;
    if (requestedSpeed !== null) {
      create(startAt, requestedSpeed, true);
    } else {
      create(startAt, 1, false);
    }
  }).catch(function (error) {
    element.textContent = String(error.message || error);
  });

  if (speedSelect) {
    speedSelect.addEventListener("change", function () {
      var speed = parseFloat(speedSelect.value);
      if (!player) { requestedSpeed = speed; return; }
      Promise.resolve(player.getCurrentTime()).then(function (now) {
        player.dispose();
        element.textContent = "";
        create(toRecordingTime(now || 0), speed, true);
      });
    });
  }
}());
