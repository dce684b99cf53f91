document.documentElement.dataset.scriptLoaded = "yes";
